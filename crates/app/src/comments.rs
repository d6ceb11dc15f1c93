//! Comments on articles.

use crate::users::ProfileView;
use crate::{App, AppError, AppResult, keys};
use crescendo_domain::{CommentId, Id, Slug, Text};
use crescendo_store::CommentRecord;
use std::sync::Arc;

/// A comment as one viewer sees it.
#[derive(Clone, Debug)]
pub struct CommentView {
    /// The comment.
    pub comment: CommentRecord,
    /// Its author, with whether the viewer follows them.
    pub author: ProfileView,
}

impl App {
    async fn article_id(&self, slug: &str) -> AppResult<Id> {
        let id = Slug::parse(slug).ok_or(AppError::NotFound("article"))?.id();
        self.article_record(id)
            .await?
            .ok_or(AppError::NotFound("article"))
            .map(|a| a.id)
    }

    async fn comment_views(
        &self,
        viewer: Option<Id>,
        comments: &[CommentRecord],
    ) -> AppResult<Vec<CommentView>> {
        let mut out = Vec::with_capacity(comments.len());
        for c in comments {
            let Some(p) = self.profile_record(c.author_id).await? else {
                continue;
            };
            out.push(CommentView {
                comment: c.clone(),
                author: self.profile_view(viewer, p).await?,
            });
        }
        Ok(out)
    }

    /// An article's comments, oldest first.
    ///
    /// # Errors
    /// [`AppError::NotFound`].
    pub async fn comments(&self, viewer: Option<Id>, slug: &str) -> AppResult<Vec<CommentView>> {
        let article = self.article_id(slug).await?;
        let list: Arc<Vec<CommentRecord>> = self
            .cached(&keys::comments(article), || async {
                Ok::<_, AppError>(Some(self.store().comments_for(article).await?))
            })
            .await?
            .unwrap_or_default();
        self.comment_views(viewer, &list).await
    }

    /// Adds a comment.
    ///
    /// # Errors
    /// [`AppError::NotFound`], [`AppError::Validation`].
    #[tracing::instrument(skip_all, fields(user_id = %author))]
    pub async fn add_comment(
        &self,
        author: Id,
        slug: &str,
        body: Option<&str>,
    ) -> AppResult<CommentView> {
        let body = Text::required("body", body.unwrap_or(""), 10_000)
            .map_err(|e| AppError::invalid(e.field, e.problem))?;
        let article = self.article_id(slug).await?;
        let k = vec![keys::comments(article)];
        let (c, purge) = self
            .purging(&k, self.store().create_comment(article, author, body))
            .await
            .map_err(|e| match AppError::from(e) {
                AppError::NotFound(_) => AppError::NotFound("article"),
                other => other,
            })?;
        self.invalidate(k, purge).await?;
        self.comment_views(Some(author), std::slice::from_ref(&c))
            .await?
            .pop()
            .ok_or(AppError::NotFound("profile"))
    }

    /// Deletes a comment; only its author may.
    ///
    /// # Errors
    /// [`AppError::NotFound`], [`AppError::Forbidden`].
    #[tracing::instrument(skip_all, fields(user_id = %user))]
    pub async fn delete_comment(&self, user: Id, slug: &str, id: CommentId) -> AppResult<()> {
        let article = self.article_id(slug).await?;
        let c = self
            .store()
            .comment(article, id)
            .await?
            .ok_or(AppError::NotFound("comment"))?;
        if c.author_id != user {
            return Err(AppError::Forbidden);
        }
        let k = vec![keys::comments(article)];
        let (_, purge) = self
            .purging(&k, self.store().delete_comment(article, id))
            .await?;
        self.invalidate(k, purge).await
    }
}
